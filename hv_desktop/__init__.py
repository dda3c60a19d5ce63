"""HematoVision: offline white-blood-cell classification for clinic workstations."""

#: The application's release (the model in assets/model has its own version, in its metadata).
__version__ = "1.10.1"
