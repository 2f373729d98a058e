"""Pure functions that turn user conditions (text, images, camera poses, trajectories) into model inputs."""
