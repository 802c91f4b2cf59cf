"""HTTP resources, one class per route family; each holds the shared ``HomeDeps``."""
