"""Design-space exploration: sweep specs, parallel evaluation, a resumable results store,
Pareto fronts and plots."""
