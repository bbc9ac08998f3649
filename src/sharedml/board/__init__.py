"""The board: web pages where people watch, compare, submit and approve jobs, rendered on the server.

Three boards share the templates, the figures and the security headers (`render`): the coordinator's
(`federation`, with logins: `accounts`, `auth`, `login`), a node's (`node_pages`: approvals and the audit
log) and the local one over a runs folder (`local`). Why server-rendered: the pages need no build step and
no JavaScript bundle (nothing to vendor, nothing to go stale), and a strict Content-Security-Policy holds
(`script-src 'self'`: one small script of ours, `static/board.js`, which follows a running job); figures
are PNGs drawn from the reported metrics and reports (`sharedml.viz`), a job's graph an SVG (`dag`), the
job forms generated from the components' parameter schemas (`pipelines`).
"""
