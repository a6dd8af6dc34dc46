"""Domain rules: what a user agent says about a device, and the location signals. Pure
functions, no I/O."""
