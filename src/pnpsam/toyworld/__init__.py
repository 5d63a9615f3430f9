"""The toy world: a procedural scene renderer, the small text-to-image model trained on it (shipped
in ``pnpsam/assets/toy``), a weight-free judge and measurements of meaning (structure kept, text
followed, background freed, clutter survival)."""
