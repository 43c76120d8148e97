"""Everything rich draws for the command line: tables, the check matrix, the trace, the
scenario report, the progress bar. The rest of netlab returns plain data and never imports rich.

- :mod:`.status`: the labs that are up, one lab's namespaces, interfaces and routes;
- :mod:`.services`: a lab's Services and their endpoints, ``netlab requests``' tally;
- :mod:`.check`: ``netlab check``'s reachability matrix;
- :mod:`.trace`: ``netlab trace``'s hop-by-hop table and verdict;
- :mod:`.scenario`: ``netlab run``'s report (the PNG plots are :mod:`netlab.scenario.plots`);
- :mod:`.doctor`: what this machine's kernel and tools can do;
- :mod:`.progress`: the bar a long ``netlab up`` shows.
"""
