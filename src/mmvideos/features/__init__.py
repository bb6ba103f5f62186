"""mmvideos.features."""
