"""Workers: migrations on deploy, and the intake queue drained every minute."""
