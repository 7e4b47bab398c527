"""The Dagster glue beside assets/: partitions, resources, jobs, sensors and schedules, GPU/Kubernetes execution
settings, run monitoring and UI metadata."""
