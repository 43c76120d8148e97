"""The command handlers, grouped by area; :mod:`netlab.cli.parser` lists them in its table.

- :mod:`.lab`: up, down, clean, plan, exec, status (a lab's life and what it is made of);
- :mod:`.observe`: capture, trace, check (looking at packets and paths);
- :mod:`.services`: apply, scale, requests (Kubernetes objects in a running lab);
- :mod:`.tools`: run, doctor, vm (scenarios, this machine, a throwaway VM).

A handler is called as ``handler(args, console)``, plus the running lab's
:class:`~netlab.state.LabState` when its table entry says ``needs_lab``; the root check and the
lab lookup happen before it, in :func:`netlab.cli.app.run_command`. It prints through the
console (tables come from :mod:`netlab.cli.render`) and returns the exit code.

Each handler imports its command's own machinery (capture, trace, services, scenarios, the
doctor, the VM) when it runs, so that ``netlab --help`` and the other commands stay fast.
"""
