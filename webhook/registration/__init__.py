"""The webhook's registration as data: which objects may reach it (CEL matchConditions
derived from the loaded policies and profiles) and the MutatingWebhookConfiguration.
Pure: webhook/cluster/registration.py writes it, ``nfsguard webhook-config`` prints it."""
