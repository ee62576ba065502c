"""Ticket backends: one file per ticket system, each idempotent on the incident's fingerprint.

A backend module registers a factory in :data:`diag.exporters.tickets.base.BACKENDS` under its name
(``local``, ``redmine``, ``rt``, ``webhook``, ``email``); the incident outbox looks it up by that name.
"""
