"""hems-rules: declarative surplus-solar load control for Victron GX devices."""

__version__ = "0.1.0"
