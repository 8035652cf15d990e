"""Video-analytics appliance for GPU edge boxes at street-camera hubs."""

__version__ = "0.1.0"
