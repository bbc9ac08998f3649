"""The board: web pages where people watch and compare jobs (see `app`)."""
