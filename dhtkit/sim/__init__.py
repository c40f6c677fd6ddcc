"""The virtual network: the real protocol code on one simulated clock."""
