"""The homework's own tools, released to students: `make run` (run_notebooks, notebooks, preflight), `make pdf` (pdf,
view_images, browser), `make submission` (submission) and the parts of the homework (parts). grading/ is the
instructor's and is never released."""
