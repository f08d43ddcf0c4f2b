"""pco_lib — helpers for post-conversion optimization reports."""
__version__ = "0.1.0"
