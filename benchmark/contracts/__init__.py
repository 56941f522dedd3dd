"""The contracts plug-ins implement, one module per kind (a model, a metric, a degradation,
a dataset reader, an evaluator, a task), and how a model spec becomes an adapter. Plug-in
folders hold only plug-ins; their interfaces live here."""
