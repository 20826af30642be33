{{ lago_cdc.bronze_cdc('loyalty', 'transacoes') }}
