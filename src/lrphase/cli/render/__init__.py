"""Results for people (rich tables), machines (versioned JSON) and CI (GitHub annotations)."""
