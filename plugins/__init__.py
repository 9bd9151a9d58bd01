"""flowkernel's default plugins, registered through its own ``flowkernel`` entry points."""
