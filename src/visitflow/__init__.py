"""VisitFlow: every home care visit, from schedule to claim, as a durable Temporal workflow."""
