"""The live view: each experiment's live forms (forms.py); the live controller, which runs one in the
lab's Locust master and keeps what the Lab view shows and the run's files (controller.py); the Lab
view's routes in Locust's web UI (routes.py) and its page (web/). locustfiles/workshop.py makes
Locust's user and shape classes from the forms and wires the controller into Locust."""
