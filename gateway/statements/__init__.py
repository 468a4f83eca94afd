"""Statements rendered for clients: the deals as CSV, a page of HTML, a PDF with the equity
curve drawn. Rendering only: the figures come computed in a domain Statement
(gateway/domain/statement.py). This package imports the domain and rendering libraries only."""

from gateway.statements.deals_csv import DEAL_COLUMNS, parse_deals_csv, render_deals_csv
from gateway.statements.html_page import render_html
from gateway.statements.pdf_document import render_pdf

__all__ = ["DEAL_COLUMNS", "parse_deals_csv", "render_deals_csv", "render_html", "render_pdf"]
