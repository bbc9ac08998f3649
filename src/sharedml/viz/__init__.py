"""Pictures of results (the optional `viz` extra: matplotlib): `figures` draws a report, metric curves and
feature importance; `page` lays a job's out as one self-contained HTML page."""
