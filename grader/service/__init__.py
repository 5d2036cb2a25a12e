"""`grader serve`: the HTTP API (`app`), its database (`store`) and the review pages (`pages`)."""
