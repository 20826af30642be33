{{ lago_mago.bronze_events('hotmart', 'purchase_extra_info') }}
