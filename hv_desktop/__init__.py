"""HematoVision: offline white-blood-cell classification for clinic workstations."""

__version__ = "0.1.0"
