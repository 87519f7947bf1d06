# nbgrader 0.9 configuration used by grading/release.py and grading/autograde.py.
# It is copied into each generated course folder (build/.../nbgrader_config.py); per-course values (assignment id,
# timeouts, the student's own modules) come from the JSON file named by $HW8_NBGRADER_SETTINGS.
import json
import os

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

settings = json.loads(open(os.environ["HW8_NBGRADER_SETTINGS"]).read())
c.CourseDirectory.root = settings["course_dir"]
c.CourseDirectory.course_id = "cs182_" + settings["assignment_id"]
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".git", "build"]
c.CourseDirectory.max_file_size = 200_000  # kB; checkpoints are tens of MB
# A grading worker's students and gradebook (grading/autograde.py) come from its own settings file, so no student id
# or grader path appears on nbgrader's command line.
if "student_id_exclude" in settings:
    c.CourseDirectory.student_id_exclude = ",".join(settings["student_id_exclude"])
if "db_url" in settings:
    c.CourseDirectory.db_url = settings["db_url"]
# Pages a TA (formgrader) or a student (feedback) opens never run a submission's script: nbconvert sanitises the
# HTML of markdown cells and outputs (grading/submitted.py already drops HTML and JavaScript outputs).
c.HTMLExporter.sanitize_html = True

# Release: solution regions become stubs, hidden tests are removed, outputs are cleared.
c.ClearSolutions.code_stub = {"python": settings["code_stub"]}      # homework/markers.py
c.ClearSolutions.text_stub = settings["text_stub"]
c.GenerateAssignment.create_assignment = True

# Autograde records the submission in the gradebook and never executes it: every autograded point is decided by
# the trusted checks (grading/harness.py), which grading/autograde.py writes into the gradebook afterwards. The
# notebooks it is given are already rebuilt from the release (grading/autograde.py: rebuild_notebook), so the
# student's outputs (plots for the written answers, bounded in size) are kept for the graders.
from nbgrader.preprocessors import (  # noqa: E402
                                    AssignLatePenalties,
                                    CheckCellMetadata,
                                    DeduplicateIds,
                                    OverwriteCells,
                                    OverwriteKernelspec,
                                    SaveAutoGrades,
)

c.Autograde.exclude_overwriting = {settings["assignment_id"]: settings["student_files"]}
c.Autograde.sanitize_preprocessors = [DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata]
c.Autograde.autograde_preprocessors = [SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
c.OverwriteCells.add_missing_cells = True
