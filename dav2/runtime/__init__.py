"""Running artifacts: backends behind one interface, sources, sinks and the FPS meter.

Never imports torch at module level: a deployment runs with numpy, OpenCV and the backend's
own library only.
"""
