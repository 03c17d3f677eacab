"""The application layer: the ``snn2loihi`` CLI and the demo, on top of train, export and deploy.

Nothing below (the core ``snn2loihi`` modules and the three stages) imports from here.
"""
