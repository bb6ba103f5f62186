"""mmvideos.annotators."""
