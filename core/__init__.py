"""The ground floor: the shared vocabulary (tasks, classes, the 18-class codec, age groups) and plumbing (error
types with their exit codes, atomic file writes, the distributed gather). Imports nothing of the project."""
