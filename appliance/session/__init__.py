"""The annotate session without Kivy: the presenter and its state, the per-image workflow,
viewport and gesture arithmetic, object rows and gallery data. `appliance.ui` draws this state
and turns touches into calls of it; everything here is testable without a screen."""
