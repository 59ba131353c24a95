"""pyinfra deploys: the operations in order, for use from any deploy.py."""
