"""Data sets the project generates and ships (nothing is downloaded): see `robustness`."""
