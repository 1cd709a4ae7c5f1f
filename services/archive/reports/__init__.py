"""The complaint analysis report (投诉分析报告): figures from the archive, rendered or served.

``period`` parses the period, ``query`` reads the archive, ``figures`` and ``forecast`` compute
a ``model.Report``, ``service.build_report`` ties them, ``http`` serves ``GET /v1/reports/kpi``
and ``render`` writes HTML, Markdown, JSON or CSV. docs/reports.md defines every figure.
"""
