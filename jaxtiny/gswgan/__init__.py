"""GS-WGAN: gradient-sanitized differentially private generators."""
