"""The local lab: Docker images built from Debian packages, and a lab VPS to converge against."""
