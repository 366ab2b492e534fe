"""The live view: each experiment's live forms (forms.py), the Lab view's page (web/), and what the
running lab's Locust master does with them."""
