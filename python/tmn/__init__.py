"""tmn: certified real-time 2-D motion prediction."""
