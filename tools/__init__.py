"""Tools around the services, not part of the image: the `complaints` command (cli), the
embedded stack and its demo (devstack), the bench, replay and the CFPB reader (replay), and
the classifier measurement (measure). Tools import services; services never import tools."""
