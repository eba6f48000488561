"""Run lpfl on Flower: the same clients, server and wire format, over Flower's messaging.

Flower only carries the bytes. Clients still train with :class:`lpfl.engine.LocalTrainer`
and send ``lpfl.wire`` payloads; the server still decodes, rejects and aggregates them
with :class:`lpfl.engine.Server` and records with :class:`lpfl.engine.Recorder`, so a
Flower run writes the same results.json/metrics.csv as ``lpfl run``.

Import ``lpfl.flower.client_app`` / ``lpfl.flower.server_app`` for the apps; this
package itself does not import Flower, so ``lpfl`` works without the ``flower`` extra.
"""
