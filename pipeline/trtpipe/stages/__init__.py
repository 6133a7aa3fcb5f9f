"""Stages and their steps. Which stages a build runs, in which order and with which recipe, is the backend's
(backends/<name>.py `stages`); shared here: the Stage type, the step types, fetch, and running a tool."""
