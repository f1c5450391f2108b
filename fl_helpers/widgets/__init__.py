"""Widgets: the live figures of the course, thin layers over pure functions.

Each widget binds sliders to a pure function that simulates and a pure
function that draws (``axes`` in, ``axes`` out), both testable without a browser:

explorer    the federated-run explorer of notebook 03 and appendix A1 (``simulate``, ``draw``, ``explorer``)
dashboard   the instructor's one-screen live demo of notebook 05 (presets, linked plots, Voila)
lr_demo     the learning-rate demo of notebook 01
noniid      FedAvg, FedProx, SCAFFOLD and FedAdam on non-IID digits: accuracy, labels and fairness per party
rendering   their shared drawing layer (PNG rendering, legend reuse, the artist cache)

Import the one you need (``from fl_helpers.widgets import explorer``); this
package imports none of them by itself.
"""
