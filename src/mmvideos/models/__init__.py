"""mmvideos.models."""
