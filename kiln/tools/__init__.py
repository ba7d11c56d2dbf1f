"""Tools that show what the compiler did: compile progress and summary, `kiln compare` (accuracy
bisection against a reference), `kiln profile` (profile.py: timers inside the native code, with
peak.py, cost.py, trace.py, profile_table.py) and `kiln report` (report.py: one HTML page, with
graph_svg.py, svg_plots.py, report_page.py). Each module is used by one `kiln` subcommand
(kiln/cli.py)."""
