"""The learned prior: modes and lambda schedules, update (17) and the hook program RELION runs."""
