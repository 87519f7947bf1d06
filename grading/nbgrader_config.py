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

# Release: solution regions become stubs, hidden tests are removed, outputs are cleared.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.GenerateAssignment.create_assignment = True

# Autograde: the student's own modules and checkpoint are graded, never the instructor's copy.
c.Autograde.exclude_overwriting = {settings["assignment_id"]: settings["student_files"]}
c.OverwriteCells.add_missing_cells = True        # a deleted test cell is put back and run
c.Execute.timeout = settings["cell_timeout"]     # seconds per cell; a stuck cell fails, the rest still run
c.Execute.interrupt_on_timeout = True
c.Execute.startup_timeout = 120
c.LimitOutput.max_lines = 200                    # huge printed output is cut before it reaches the gradebook
c.LimitOutput.max_traceback = 60
if settings.get("kernel_name"):
    c.Execute.kernel_name = settings["kernel_name"]
