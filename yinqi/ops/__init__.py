"""Running Yinqi on one machine: the processes ``yinqi up`` starts, watches and stops, the
state it leaves for ``yinqi down`` and ``yinqi status``, and links into the Prefect UI."""
