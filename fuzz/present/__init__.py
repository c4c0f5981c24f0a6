"""What kfuzz shows: the run summary and JSON document, the report (HTML, Markdown, PNG
plots), JUnit XML and exported reproducers."""
