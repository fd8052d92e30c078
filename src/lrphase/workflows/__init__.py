"""The library functions behind the commands: probe, check, confirm and sweep, each returning a frozen result."""
