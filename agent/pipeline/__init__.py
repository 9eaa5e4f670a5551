"""Pipeline: one captured page in, its archival parts out (file in, file out).

Owns: cleanup (`imaging`: deskew, orientation, blank, binarise), cover-sheet detection and
printing (`coversheet`), OCR (`ocr`, the only caller of tesseract), the PDF/A mixed-raster page
(`archival`), and the orchestrator that runs them in order and records every decision
(`process.process_page`).
Must not: know the outbox or the uplink (the worker at the top of `agent` hands it paths and
records what it returns), block scanning, or delete a capture.
"""
